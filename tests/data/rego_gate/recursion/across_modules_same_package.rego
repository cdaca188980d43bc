# module: one.rego
package gate

a if b
# module: two.rego
package gate

b if a
