"""Retrain every shipped digits checkpoint with fixed seeds: the MLP and the residual CNN, each in float and
QAT at W8A8, W4A4 and W2A2; writes emu/zoo/models/ and accuracy.json and prints the accuracy table.

A few minutes on two cores (single-threaded, so reruns on one machine are bit-for-bit identical).
"""
from emu.zoo.digits import main

if __name__ == "__main__":
    main()
