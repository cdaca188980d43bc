# module: gate.rego
package gate

config.limits := {"cpu": 2}
# module: other.rego
package gate.config.quotas

cpu := 4
