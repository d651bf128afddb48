"""Real-microVM tooling for tests and demos (see guest.py and README.md)."""
