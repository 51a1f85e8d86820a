"""Reading, validating, detecting and packing weights from checkpoint files."""
