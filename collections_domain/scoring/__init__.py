"""The propensity-to-pay score: the probability that a collections case cures before the DPD 30
hand-off, from the loan's own schedule and payments at opening.

``features`` computes the inputs (one function for training and run time), ``model`` loads the
shipped JSON model and scores in pure Python, ``train`` rebuilds the model (scikit-learn; never
imported at run time). The model card is ``docs/scoring/README.md``.
"""
