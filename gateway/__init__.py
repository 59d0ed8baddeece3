"""bastion.gateway: the egress gateway; needs the ``[gateway]`` extra (checked on import)."""

from bastion.extras import require

require("gateway", feature="bastion.gateway")
