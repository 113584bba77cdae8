"""Running programs on a backend (run.py: golden or RTL, chunked into runs), cross-checking them layer by layer
(verify.py) and scoring held-out accuracy (evaluate.py)."""
