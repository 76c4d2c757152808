"""Labelling workflows: one module per command (auto, suggest, importing, issues, augment).

Each takes file paths and its config (label.config), loads the data, runs the algorithm modules
next to this package (label.autolabel, label.active, label.issues, label.augment, label.labelstudio:
plain functions over arrays), writes every output atomically and returns a typed result whose
`to_json()` is the command's `--json` document. `rows` holds what they share: matching rows across
files by id and text.
"""
