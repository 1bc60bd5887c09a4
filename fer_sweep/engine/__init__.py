"""The plain training loop (fit, evaluate), its callbacks and the precision context."""
