"""Distillation of the lightweight student from the Magenta teacher."""
