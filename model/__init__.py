"""The spatial-statistics VAE of arXiv 2402.11103, built on spatialstats.TwoPointLoss."""
