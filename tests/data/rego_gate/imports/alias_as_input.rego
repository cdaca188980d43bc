package gate

import data.lib as input

allow if true
