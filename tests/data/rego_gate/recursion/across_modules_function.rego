# module: a.rego
package lib.a

f(x) := data.lib.b.g(x)
# module: b.rego
package lib.b

g(x) := data.lib.a.f(x)
