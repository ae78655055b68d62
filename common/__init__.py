"""What every stage shares: the one typed config (`common.config`) and atomic file writing
(`common.io`).

It sits below the stages and imports nothing from features/, training/ or serving/, so each
of them can use it without an import climbing back up the flow.
"""
