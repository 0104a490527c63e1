"""Segments: named audiences (rule, cluster, lookalike), their members and sizes."""
