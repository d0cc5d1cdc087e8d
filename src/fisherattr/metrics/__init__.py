"""Evaluation metrics, one module per family (see EVALUATION.md)."""
