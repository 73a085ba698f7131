"""Runnable examples that show how a booking platform adopts Samtycke."""
