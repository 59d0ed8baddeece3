"""bastion.policies"""
