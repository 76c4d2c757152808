"""Low-cost labelling."""
