# module: a.rego
package gate

default level := "low"
# module: b.rego
package gate

default level := "high"
