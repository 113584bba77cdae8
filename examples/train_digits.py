"""Retrain the shipped digits checkpoints (float, W8A8 and W4A4 QAT) with fixed seeds: about 15 s."""
from emu.zoo.digits import main

if __name__ == "__main__":
    main()
