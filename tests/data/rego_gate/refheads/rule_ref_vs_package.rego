# module: gate.rego
package gate

config.limits := {"cpu": 2}
# module: limits.rego
package gate.config.limits

cpu := 4
