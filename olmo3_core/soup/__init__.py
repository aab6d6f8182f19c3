"""Midtrain souping: the weight average of several midtrain runs (data-order seeds), and its report."""
