"""AlignEarth: co-registered optical/SAR chips, their dataset, and the student's distillation."""
