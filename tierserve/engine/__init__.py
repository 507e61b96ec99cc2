"""tierserve.engine"""
