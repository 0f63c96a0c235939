"""The web console's words, in English and Chinese: one table, used by the templates'
`t()` helper. The API's error messages (pixgate.errors) are the other half of the
catalogue: a domain refusal shown in the console is rendered with `PixgateError.message`.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("en", "zh")

# key -> (English, Chinese)
MESSAGES: dict[str, tuple[str, str]] = {
    "app_name": ("pixgate console", "pixgate 控制台"),
    "nav_dashboard": ("Dashboard", "概览"),
    "nav_keys": ("API keys", "API 密钥"),
    "nav_redeem": ("Redeem", "兑换"),
    "nav_ledger": ("Ledger", "账单"),
    "nav_password": ("Password", "修改密码"),
    "logout": ("Log out", "退出登录"),
    "logout_everywhere": ("Log out everywhere", "退出所有设备"),
    "logout_everywhere_help": (
        "Ends every console login of this account, on every device, this one included.",
        "结束本账户在所有设备上的控制台登录(包括当前设备)。",
    ),
    "language": ("Language", "语言"),
    "signup_title": ("Create an account", "注册账户"),
    "signup_submit": ("Sign up", "注册"),
    "signup_closed": (
        "Sign-up is closed on this server; ask its operator for an account.",
        "本服务器未开放注册,请联系运营方开通账户。",
    ),
    "have_account": ("Already have an account? Log in", "已有账户?登录"),
    "no_account": ("No account yet? Sign up", "还没有账户?注册"),
    "login_title": ("Log in", "登录"),
    "login_submit": ("Log in", "登录"),
    "field_name": ("User name", "用户名"),
    "field_login": ("User name or email", "用户名或邮箱"),
    "field_email": ("Email", "邮箱"),
    "field_password": ("Password", "密码"),
    "field_password_current": ("Current password", "当前密码"),
    "field_password_new": ("New password", "新密码"),
    "field_password_repeat": ("New password again", "再次输入新密码"),
    "password_help": ("At least 8 characters.", "至少 8 个字符。"),
    "login_failed": (
        "The user name or password is wrong.",
        "用户名或密码错误。",
    ),
    "name_invalid": (
        "A user name is 3-64 letters, digits, '.', '_' or '-'.",
        "用户名为 3-64 位字母、数字、'.'、'_' 或 '-'。",
    ),
    "email_invalid": ("This is not an email address.", "邮箱地址格式不正确。"),
    "email_taken": ("An account with this email already exists.", "该邮箱已注册。"),
    "name_taken": ("This user name is taken.", "该用户名已被占用。"),
    "password_too_short": (
        "The password must have at least 8 characters.",
        "密码至少需要 8 个字符。",
    ),
    "password_too_long": ("The password is too long (256 at most).", "密码过长(最多 256 个字符)。"),
    "password_mismatch": ("The two new passwords differ.", "两次输入的新密码不一致。"),
    "password_wrong": ("The current password is wrong.", "当前密码错误。"),
    "password_changed": (
        "Password changed. Your other logins were ended.",
        "密码已修改,其他设备上的登录已结束。",
    ),
    "password_title": ("Change password", "修改密码"),
    "password_submit": ("Change password", "修改密码"),
    "no_password": (
        "This account has no console password (it was made for the API only).",
        "该账户没有控制台密码(仅用于 API)。",
    ),
    "csrf_failed": (
        "This form has expired or did not come from this console (CSRF check failed). "
        "Reload the page and try again.",
        "表单已过期或并非来自本控制台(CSRF 校验失败),请刷新页面后重试。",
    ),
    "not_found": ("Not found.", "未找到。"),
    "error_title": ("Something went wrong", "出错了"),
    "back_to_console": ("Back to the console", "返回控制台"),
    "dash_title": ("Dashboard", "概览"),
    "dash_hello": ("Signed in as {name}", "当前用户:{name}"),
    "balance": ("Balance", "余额"),
    "granted": ("Credit received", "累计获得额度"),
    "free_grant": ("Free grant", "免费额度"),
    "used": ("Spent", "已消费"),
    "plan": ("Plan", "套餐"),
    "images_used": ("Images made", "已生成图片"),
    "images_remaining": ("Images remaining ({model})", "剩余可生成图片({model})"),
    "unlimited": ("unlimited", "不限"),
    "recent_tasks": ("Recent tasks", "最近任务"),
    "no_tasks": (
        "No tasks yet: create a key and send a request.",
        "暂无任务:创建密钥后发送请求即可。",
    ),
    "col_task": ("Task", "任务"),
    "col_model": ("Model", "模型"),
    "col_status": ("Status", "状态"),
    "col_images": ("Images", "图片"),
    "col_cost": ("Cost", "费用"),
    "col_created": ("Created", "创建时间"),
    "task_title": ("Task {id}", "任务 {id}"),
    "prompt": ("Prompt", "提示词"),
    "seed": ("Seed", "种子"),
    "error": ("Error", "错误"),
    "keys_title": ("API keys", "API 密钥"),
    "keys_new": ("Create a key", "创建密钥"),
    "key_name": ("Name", "名称"),
    "key_cap": ("Image cap (optional)", "图片数量上限(可选)"),
    "key_expires": ("Expires on (optional, UTC)", "过期日期(可选,UTC)"),
    "key_create": ("Create key", "创建"),
    "key_created": (
        "Your new key. It is shown only this once: copy it now.",
        "新密钥只显示这一次,请立即复制保存。",
    ),
    "copy": ("Copy", "复制"),
    "copied": ("Copied", "已复制"),
    "no_keys": ("No keys yet.", "暂无密钥。"),
    "col_key": ("Key", "密钥"),
    "col_used_cap": ("Used / cap", "已用 / 上限"),
    "col_expires": ("Expires", "过期时间"),
    "col_state": ("State", "状态"),
    "state_active": ("active", "可用"),
    "state_disabled": ("disabled", "已禁用"),
    "state_expired": ("expired", "已过期"),
    "disable": ("Disable", "禁用"),
    "enable": ("Enable", "启用"),
    "cap_invalid": (
        "The image cap must be a whole number from 0 to 1000000000.",
        "图片数量上限必须是 0 到 1000000000 之间的整数。",
    ),
    "expires_invalid": (
        "The expiry must be a future date (YYYY-MM-DD).",
        "过期日期必须是今天之后的日期(YYYY-MM-DD)。",
    ),
    "redeem_title": ("Redeem a code", "兑换码充值"),
    "redeem_code": ("Code", "兑换码"),
    "redeem_submit": ("Redeem", "兑换"),
    "redeemed": (
        "Redeemed: {amount} {currency} added; the balance is {balance} {currency}.",
        "兑换成功:到账 {amount} {currency},当前余额 {balance} {currency}。",
    ),
    "ledger_title": ("Ledger", "账单明细"),
    "ledger_csv": ("Download CSV", "导出 CSV"),
    "no_ledger": ("No entries.", "暂无记录。"),
    "col_time": ("Time (UTC)", "时间(UTC)"),
    "col_kind": ("Kind", "类型"),
    "col_amount": ("Amount", "金额"),
    "col_reason": ("Details", "说明"),
    "kind_grant": ("grant", "赠送"),
    "kind_topup": ("top-up", "充值"),
    "kind_redemption": ("redemption", "兑换码"),
    "kind_reserve": ("reserved", "预扣"),
    "kind_refund": ("released", "退回预扣"),
    "kind_charge": ("charge", "扣费"),
    "kind_adjust": ("adjustment", "调整"),
}


def t(key: str, lang: str = "en", **values: Any) -> str:
    """The console string `key` in `lang` ('en' or 'zh'), with `values` filled in."""
    en, zh = MESSAGES[key]
    text = zh if lang == "zh" else en
    return text.format(**values) if values else text
