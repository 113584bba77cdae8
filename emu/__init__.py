"""Systola software: quantizer front end (frontend/), contract (contract/), compiler (compiler/), golden emulator
and integer reference (emulator/), running and cross-checking (runtime/), the command line (cli/) and the
shipped networks (zoo/). See docs/architecture.md."""
