"""Real-world monitoring: drift, calibration, discrimination and fairness of deployed models, from the store."""
