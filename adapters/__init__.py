"""bastion.adapters"""
