package gate

import data.lib.users
import data.other.users

allow if "alice" in users
