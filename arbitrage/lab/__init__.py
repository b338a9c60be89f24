"""The lab: a synthetic arithmetic task and the small models trained on it."""
