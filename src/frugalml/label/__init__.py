"""Low-cost labelling: auto-label, pick rows for humans, find label issues, augment.

- config.py: one settings dataclass per command and step kind (the only copy of each default).
- workflow/: one module per command (auto, suggest, importing, issues, augment): files in, files
  and a typed result out.
- steps.py: the label_* pipeline step kinds.
- The rest are the algorithms, plain functions over arrays: embeddings, neighbours, probe,
  autolabel, active, issues, augment, and labelstudio (Label Studio tasks and exports).
"""
