"""Inference backends behind one small interface (see engines.base.Engine)."""
