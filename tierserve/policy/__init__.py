"""tierserve.policy"""
