package gate

import input.user
import input.user

allow if user == "alice"
