package gate

import config.limits

allow if limits.cpu > 1
