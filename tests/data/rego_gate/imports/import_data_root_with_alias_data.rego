package gate

import data.lib as data

allow if true
