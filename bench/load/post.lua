-- A frappe.client.get_list RPC with a form body: erpguard's ERPNext profile
-- must read every form body to look for cmd=login.
wrk.method = "POST"
wrk.body = "cmd=frappe.client.get_list&doctype=Sales%20Invoice&fields=%5B%22name%22%2C%22customer%22%2C%22grand_total%22%5D&filters=%5B%5B%22docstatus%22%2C%22%3D%22%2C1%5D%5D&order_by=modified%20desc&limit_page_length=20"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
