# module: a.rego
package gate

import data.lib

allow if lib.ok
# module: b.rego
package gate

import data.lib

deny if not lib.ok
