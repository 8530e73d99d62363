"""Portfolios of real loans: the Home Credit data, the loan book and the replay simulation."""
