"""Retrain the shipped MNIST checkpoint with fixed seeds: mnist-tfc in float and QAT at W8A8, W4A4, W2A2 and
W1A1 (binary); writes emu/zoo/models/mnist_tfc_* and mnist_accuracy.json and prints the accuracy table.

About four minutes on one core (single-threaded, so reruns on one machine are bit-for-bit identical).
"""
from emu.zoo.mnist import main

if __name__ == "__main__":
    main()
