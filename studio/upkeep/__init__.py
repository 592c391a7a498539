"""Keeping the store whole: what was interrupted and is finished at the next start (journal), the check and
the repair behind `python -m studio check [--repair]` and the launch's banner."""
