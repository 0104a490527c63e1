"""Interests: the IAB taxonomies, page categorisation and decayed interest profiles."""
