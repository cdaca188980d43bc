package gate

import data.nowhere.to.be.found

allow if true
