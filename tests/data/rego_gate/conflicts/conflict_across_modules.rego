# module: a.rego
package gate

allow := true
# module: b.rego
package gate

allow contains 1 if input.x
