"""Configs as plain data: the base config, dataset/recipe presets and validation."""
