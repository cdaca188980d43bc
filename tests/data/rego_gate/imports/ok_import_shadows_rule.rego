package gate

import data.lib.allow

allow if input.ok
