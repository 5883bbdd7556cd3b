"""Distil a fine-tuned BERT teacher into a small BERT student (needs the ``distill`` extra)."""
