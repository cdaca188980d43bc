# module: a.rego
package gate

is_admin if input.role == "admin"
# module: b.rego
package gate

allow if is_admin
