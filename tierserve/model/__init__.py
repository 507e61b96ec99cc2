"""tierserve.model"""
