"""Shipped example networks: digits MLP and residual CNN, QAT-trained at W8A8, W4A4 and W2A2 (`emu.zoo.digits`)."""
