"""bastion.plugins"""
