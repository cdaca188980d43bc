# module: one.rego
package one

allow if data.two.allow
# module: two.rego
package two

allow if input.ok
