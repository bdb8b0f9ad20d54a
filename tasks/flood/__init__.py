"""Flood: water before and after an event from SAR (and cloud-free optical) scenes."""
