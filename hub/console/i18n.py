"""The operator page's labels: Vietnamese by default, English with ``?lang=en`` (kept in a cookie).

Labels by key (``_LABELS``), states and outcomes (``MESSAGE_STATES``), and the details the store writes in
English (status-machine reasons, retry plans, sync reports: ``DETAILS``), translated by pattern so that the
Vietnamese page shows no English sentence the hub wrote itself; a partner's own error text is shown as it came.
"""

from __future__ import annotations

import re

from hub.console.action_labels import ACTION_LABELS, ACTION_STATES

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
LANG_COOKIE = "lienthong_lang"

# key: (Vietnamese, English)
_LABELS: dict[str, tuple[str, str]] = {
    "title": ("Bảng điều hành trục liên thông", "Exchange hub operator console"),
    "signin": ("Đăng nhập", "Sign in"),
    "signout": ("Đăng xuất", "Sign out"),
    "username": ("Tên đăng nhập", "User name"),
    "password": ("Mật khẩu", "Password"),
    "signin_help": (
        "Tài khoản do quản trị viên cấp (trang Tài khoản hoặc lệnh hub operator add).",
        "Accounts are given by the administrator (the Accounts page or hub operator add).",
    ),
    "bad_login": ("Sai tên đăng nhập hoặc mật khẩu.", "Wrong user name or password."),
    "bad_csrf": (
        "Phiên làm việc đã hết hạn hoặc biểu mẫu không hợp lệ. Vui lòng thử lại.",
        "The session expired or the form is not valid. Please try again.",
    ),
    "throttled": (
        "Đăng nhập sai quá nhiều lần. Vui lòng chờ một lát rồi thử lại.",
        "Too many failed sign-ins. Please wait a moment and try again.",
    ),
    "needs_https": (
        "Trang này cần được mở qua HTTPS: trình duyệt sẽ không giữ phiên đăng nhập qua HTTP.",
        "Open this page over HTTPS: the browser will not keep a sign-in over plain HTTP.",
    ),
    "signed_in_as": ("Đăng nhập: ", "Signed in as "),
    # accounts and roles (hub.console.accounts, hub.console.roles)
    "accounts": ("Tài khoản", "Accounts"),
    "accounts_roles": (
        "Xem: chỉ đọc · Vận hành: thêm các thao tác (gửi lại…) · Quản trị: thêm tài khoản, nhật ký kiểm tra, nội "
        "dung gốc. Mọi thay đổi được ghi nhật ký; vô hiệu hoá hay đặt lại mật khẩu kết thúc ngay các phiên của "
        "tài khoản.",
        "Viewer: reads only · Operator: also acts (replay…) · Admin: also accounts, the audit log, raw payloads. "
        "Every change is audited; disabling an account or resetting its password ends its sessions at once.",
    ),
    "role": ("Vai trò", "Role"),
    "role_viewer": ("Xem", "Viewer"),
    "role_operator": ("Vận hành", "Operator"),
    "role_admin": ("Quản trị", "Admin"),
    "acc_active": ("Đang dùng", "Active"),
    "acc_disabled_since": ("Vô hiệu từ {at}", "Disabled since {at}"),
    "acc_source": ("Nguồn", "Kept in"),
    "acc_source_store": ("Cơ sở dữ liệu", "The store"),
    "acc_source_env": ("Cấu hình (LIENTHONG_OPERATORS)", "Configuration (LIENTHONG_OPERATORS)"),
    "acc_source_key": ("Cấu hình (khoá API)", "Configuration (API key)"),
    "acc_config_note": (
        "Sửa trong cấu hình, hoặc thêm tài khoản cùng tên ở đây để quản lý tại trang này.",
        "Change it in the configuration, or add an account of the same name here to manage it on this page.",
    ),
    "acc_shadowed": (
        "Tài khoản trong cơ sở dữ liệu thay thế tài khoản cấu hình cùng tên: {names}.",
        "Accounts kept in the store replace the configured ones of the same name: {names}.",
    ),
    "acc_created": ("Tạo lúc / bởi", "Created / by"),
    "acc_password_changed": ("Đổi mật khẩu lúc", "Password changed"),
    "acc_add": ("Thêm tài khoản", "Add an account"),
    "acc_next": ("Tiếp tục", "Next"),
    "acc_step_add": ("Thêm tài khoản", "Add account"),
    "acc_step_reset": ("Đặt lại mật khẩu", "Reset password"),
    "acc_step_disable": ("Vô hiệu hoá", "Disable"),
    "acc_step_enable": ("Cho dùng lại", "Enable"),
    "acc_confirm_add": (
        "Tài khoản {name} sẽ được tạo với vai trò {role}. Nhập mật khẩu ban đầu (ít nhất 8 ký tự) rồi xác nhận.",
        "Account {name} will be created with the role {role}. Type its initial password (8 characters or more) "
        "and confirm.",
    ),
    "acc_confirm_reset": (
        "Mật khẩu của {name} sẽ được thay và mọi phiên đăng nhập của tài khoản này kết thúc ngay.",
        "The password of {name} will be replaced and every session of this account ends at once.",
    ),
    "acc_confirm_disable": (
        "{name} sẽ không đăng nhập được nữa và mọi phiên đăng nhập của tài khoản này kết thúc ngay.",
        "{name} will no longer sign in, and every session of this account ends at once.",
    ),
    "acc_confirm_enable": (
        "{name} sẽ đăng nhập lại được với mật khẩu cũ.",
        "{name} will sign in again, with its password as it was.",
    ),
    "acc_audited": (
        "Thao tác được ghi nhật ký kiểm tra với tên của bạn ({who}).",
        "The change is recorded in the audit log under your name ({who}).",
    ),
    "acc_new_password": ("Mật khẩu mới", "New password"),
    "acc_repeat_password": ("Nhập lại mật khẩu", "Repeat the password"),
    "acc_do_add": ("Xác nhận thêm", "Add the account"),
    "acc_do_reset": ("Xác nhận đặt lại", "Reset the password"),
    "acc_do_disable": ("Xác nhận vô hiệu hoá", "Disable the account"),
    "acc_do_enable": ("Xác nhận cho dùng lại", "Enable the account"),
    "acc_added": ("Đã thêm tài khoản {name}.", "Account {name} added."),
    "acc_reset": (
        "Đã đặt lại mật khẩu của {name}; {n} phiên đã kết thúc.",
        "The password of {name} was reset; {n} session(s) ended.",
    ),
    "acc_disabled": ("Đã vô hiệu hoá {name}; {n} phiên đã kết thúc.", "{name} disabled; {n} session(s) ended."),
    "acc_enabled": ("{name} đăng nhập lại được.", "{name} can sign in again."),
    "acc_err_mismatch": ("Hai mật khẩu không khớp; chưa có gì thay đổi.", "The two passwords differ; nothing changed."),
    "acc_err_self": ("Không thể tự vô hiệu hoá tài khoản của mình.", "You cannot disable your own account."),
    "acc_err_account": ("Thay đổi bị từ chối.", "The change was refused."),
    "acc_err_account_name": (
        "Tên «{name}» không dùng được: 1–64 chữ cái không dấu, chữ số, '.', '_', '@' hoặc '-'.",
        "The name “{name}” is not usable: 1–64 letters, digits, '.', '_', '@' or '-'.",
    ),
    "acc_err_account_role": ("Vai trò không hợp lệ.", "Not a role."),
    "acc_err_account_password": ("Mật khẩu cần ít nhất 8 ký tự.", "A password needs at least 8 characters."),
    "acc_err_account_exists": (
        "Đã có tài khoản {name} (kể cả đã vô hiệu hoá).",
        "An account {name} exists already (disabled ones count).",
    ),
    "acc_err_account_unknown": (
        "Không có tài khoản {name} trong cơ sở dữ liệu.",
        "No account {name} is kept in the store.",
    ),
    "acc_err_account_disabled": ("{name} đã bị vô hiệu hoá rồi.", "{name} is disabled already."),
    "acc_err_account_enabled": ("{name} đang dùng được rồi.", "{name} is not disabled."),
    "refused_title": ("Không đủ quyền", "Not allowed"),
    "refused_text": (
        "Vai trò của bạn ({role}) không làm được việc này; cần vai trò",
        "Your role ({role}) may not do this; it needs the role",
    ),
    "back_to_page": ("Về trang điều hành", "Back to the console"),
    # the audit view (hub.console.audit_view)
    "audit": ("Nhật ký kiểm tra", "Audit log"),
    "audit_since": ("Từ", "From"),
    "audit_until": ("Đến", "Until"),
    "audit_group": ("Nhóm thao tác", "Action group"),
    "audit_all": ("Tất cả", "All"),
    "audit_group_signin": ("Đăng nhập / đăng xuất", "Sign-ins and sign-outs"),
    "audit_group_registry": ("Đăng ký kết nối", "Connector registry"),
    "audit_group_dead_letter": ("Thư lỗi", "Dead letters"),
    "audit_group_delivery": ("Chuyển phát", "Deliveries"),
    "audit_group_destination": ("Đối tác nhận", "Destinations"),
    "audit_group_payload": ("Xem nội dung", "Payload views"),
    "audit_group_account": ("Tài khoản", "Accounts"),
    "audit_group_dossier": ("Đính chính hồ sơ", "Dossier corrections"),
    "audit_outcome_ok": ("Thành công", "Done"),
    "audit_outcome_refused": ("Bị từ chối", "Refused"),
    "audit_apply": ("Lọc", "Filter"),
    "audit_clear": ("Bỏ lọc", "Clear"),
    "audit_total": ("{n} trên tổng {total} mục khớp", "{n} of {total} matching entries"),
    "audit_none": ("Không có mục nào khớp bộ lọc.", "No entry matches the filters."),
    "audit_action": ("Thao tác", "Action"),
    "audit_subject": ("Đối tượng", "Subject"),
    "audit_client": ("Địa chỉ", "Address"),
    "audit_first": ("Trang đầu", "First page"),
    "audit_next": ("Trang sau", "Next page"),
    "audit_k_reason": ("lý do", "reason"),
    "audit_k_recent_failures": ("số lần sai gần đây", "recent failures"),
    "audit_k_account": ("tài khoản", "account"),
    "audit_k_role": ("vai trò", "role"),
    "audit_k_sessions_ended": ("số phiên kết thúc", "sessions ended"),
    "audit_k_backing_off": ("đang chờ theo", "backing off"),
    "audit_k_retry_after_s": ("chờ (giây)", "wait (s)"),
    "audit_k_changed": ("đã đổi", "changed"),
    "audit_k_message_id": ("mã thông điệp", "message id"),
    "audit_k_destination": ("đối tác nhận", "destination"),
    "audit_k_status": ("trạng thái", "status"),
    "audit_k_outcome": ("kết quả", "outcome"),
    "audit_k_raw": ("bản gốc", "original"),
    "audit_k_sender": ("bên gửi", "sender"),
    "audit_k_count": ("số lượng", "count"),
    "audit_k_deliveries": ("lần gửi", "deliveries"),
    "audit_k_paused_by": ("người tạm dừng", "paused by"),
    "audit_k_paused_at": ("tạm dừng lúc (UTC)", "paused at (UTC)"),
    "audit_k_rule": ("quy tắc", "rule"),
    "audit_v_True": ("có", "yes"),
    "audit_v_False": ("không", "no"),
    "audit_v_wrong-password": ("sai mật khẩu", "wrong password"),
    "audit_v_unknown-account": ("không có tài khoản này", "unknown account"),
    "audit_v_account-disabled": ("tài khoản đã bị vô hiệu hoá", "account disabled"),
    "audit_v_credential-changed": ("mật khẩu, khoá hoặc vai trò đã đổi", "password, key or role changed"),
    "audit_v_signed-out": ("tự đăng xuất", "signed out"),
    "audit_v_store": ("cơ sở dữ liệu", "the store"),
    "audit_v_config": ("cấu hình", "configuration"),
    "audit_v_viewer": ("Xem", "Viewer"),
    "audit_v_operator": ("Vận hành", "Operator"),
    "audit_v_admin": ("Quản trị", "Admin"),
    "audit_v_account": ("tài khoản", "account"),
    "audit_v_address": ("địa chỉ", "address"),
    "audit_bad_cursor": (
        "Liên kết trang không hợp lệ; đang hiện trang đầu.",
        "That page link is not valid; showing the first page.",
    ),
    "updated": ("Cập nhật lúc", "Updated at"),
    "stale": ("Mất kết nối — dữ liệu có thể đã cũ", "Connection lost — figures may be stale"),
    "auto_refresh": ("tự làm mới mỗi {n} giây", "refreshes every {n} s"),
    "summary_dead": ("Thư lỗi chờ xử lý", "Dead letters waiting"),
    "summary_pending": ("Đang chờ gửi", "Waiting to be delivered"),
    "summary_down": ("Đối tác mất kết nối", "Partners down"),
    "summary_overdue": ("Hồ sơ quá hạn tiếp nhận", "Dossiers past intake deadline"),
    # queues
    "queues": ("Hàng đợi theo đối tác nhận", "Queues per destination"),
    "destination": ("Đối tác nhận", "Destination"),
    "ready": ("Sẵn sàng", "Ready"),
    "in_flight": ("Đang gửi", "In flight"),
    "retrying": ("Chờ gửi lại", "Retrying"),
    "dead": ("Lỗi (thư chết)", "Dead"),
    "delivered": ("Đã gửi", "Delivered"),
    "oldest": ("Tin cũ nhất chờ", "Oldest waiting"),
    "rate": ("Tốc độ (tin/phút)", "Rate (msg/min)"),
    "no_queues": ("Chưa có tin nào được định tuyến.", "No message has been routed yet."),
    "old_hint": ("Tin chờ quá {age}", "Waiting longer than {age}"),
    # partners
    "partners": ("Đối tác kết nối", "Partners"),
    "partner": ("Đối tác", "Partner"),
    "kind": ("Loại", "Kind"),
    "state": ("Trạng thái", "State"),
    "last_success": ("Gửi thành công gần nhất", "Last success"),
    "error_rate": ("Tỷ lệ lỗi ({m} phút)", "Error rate ({m} min)"),
    "cert_days": ("Chứng thư hết hạn sau", "Certificate expires in"),
    "last_error": ("Lỗi gần nhất", "Last error"),
    "days": ("{n} ngày", "{n} days"),
    "never": ("chưa có", "never"),
    "no_cert": ("không có", "none"),
    "disabled": ("đã tắt", "disabled"),
    "state_healthy": ("Bình thường", "Healthy"),
    "state_degraded": ("Suy giảm", "Degraded"),
    "state_down": ("Mất kết nối", "Down"),
    "state_idle": ("Chưa có lưu lượng", "No traffic"),
    "state_push_only": ("Chỉ gửi lên trục", "Sends only"),
    "recovered_at": ("Đã hoạt động lại lúc {at}", "Recovered at {at}"),
    "no_partners": ("Chưa có đối tác nào được đăng ký.", "No partner is registered yet."),
    "partners_note": (
        "Trạng thái suy ra từ các lần gửi và tra cứu gần đây: mất kết nối = nhiều lần lỗi liên tiếp, không lần nào "
        "thành công; đã hoạt động lại = thành công trở lại sau các lần lỗi.",
        "State derived from recent deliveries and lookups: down = repeated failures and no success in the window; "
        "recovered = succeeding again after failures.",
    ),
    # dead letters
    "dead_letters": ("Thư lỗi (dead letters)", "Dead letters"),
    "reason": ("Lý do", "Reason"),
    "attempts": ("Số lần gửi", "Attempts"),
    "dossier": ("Mã hồ sơ", "Dossier code"),
    "message": ("Mã thông điệp", "Message id"),
    "type": ("Loại thông điệp", "Message type"),
    "since": ("Từ lúc", "Since"),
    "payload": ("Nội dung (đã che dữ liệu cá nhân)", "Payload (personal data masked)"),
    "show_payload": ("Xem nội dung", "Show payload"),
    "replay": ("Gửi lại", "Replay"),
    "replay_selected": ("Gửi lại các mục đã chọn", "Replay selected"),
    "select_all": ("Chọn tất cả", "Select all"),
    "no_dead": (
        "Không có thư lỗi nào. Mọi tin đều đã được gửi hoặc đang chờ.",
        "No dead letters. Every message is delivered or on its way.",
    ),
    "confirm_title": ("Xác nhận gửi lại", "Confirm replay"),
    "confirm_text": (
        "Các thư sau sẽ được gửi lại cho đối tác. Thao tác được ghi nhật ký với tên của bạn ({who}).",
        "These messages will be sent to their partner again. The action is recorded under your name ({who}).",
    ),
    "confirm": ("Xác nhận gửi lại", "Confirm replay"),
    "cancel": ("Huỷ", "Cancel"),
    "nothing_selected": ("Chưa chọn thư nào để gửi lại.", "No dead letter was selected."),
    "replayed_ok": ("Đã đưa {n} thư vào hàng đợi gửi lại.", "{n} dead letter(s) queued again."),
    "replay_failed": ("Không gửi lại được thư {id}: {error}", "Could not replay dead letter {id}: {error}"),
    # search
    "search": ("Tra cứu thông điệp / hồ sơ", "Message / dossier search"),
    "search_placeholder": ("Mã thông điệp hoặc mã hồ sơ", "Message id or dossier code"),
    "search_button": ("Tra cứu", "Search"),
    "not_found": ("Không tìm thấy thông điệp hay hồ sơ nào khớp với «{q}».", "No message or dossier matches “{q}”."),
    "trace": ("Lịch sử thông điệp", "Message trace"),
    "status": ("Tình trạng", "Status"),
    "sender": ("Bên gửi", "Sender"),
    "receiver": ("Bên nhận", "Receiver"),
    "received_at": ("Nhận lúc", "Received at"),
    "time": ("Thời điểm", "Time"),
    "event": ("Sự kiện", "Event"),
    "attempt": ("Lần", "Attempt"),
    "detail": ("Chi tiết", "Detail"),
    "actor": ("Người thực hiện", "By"),
    "deliveries": ("Chuyển phát", "Deliveries"),
    "timeline": ("Tiến trình hồ sơ", "Dossier timeline"),
    "dossier_status": ("Trạng thái hồ sơ hiện tại", "Current dossier status"),
    "dossier_due": ("Hạn trả kết quả", "Due date"),
    "due_moved": ("Hạn trả dời từ {old} sang {new}", "Due date moved from {old} to {new}"),
    "outcome": ("Kết quả", "Outcome"),
    "source": ("Nguồn", "Source"),
    "messages_of_dossier": ("Các thông điệp của hồ sơ", "Messages of the dossier"),
    "times_note": ("Giờ Việt Nam (UTC+7)", "Vietnam time (UTC+7)"),
    # the message log (hub.console.message_log)
    "nav_overview": ("Tổng quan", "Overview"),
    "message_log": ("Nhật ký thông điệp", "Message log"),
    "from_time": ("Từ lúc (giờ VN)", "From (Vietnam time)"),
    "to_time": ("Đến trước (giờ VN)", "Until (Vietnam time)"),
    "receivers": ("Nơi nhận", "Receivers"),
    "any": ("Tất cả", "Any"),
    "filter": ("Lọc", "Filter"),
    "clear_filters": ("Bỏ lọc", "Clear filters"),
    "showing": ("{first}–{last} trên tổng số {total}", "{first}–{last} of {total}"),
    "showing_more": ("{first}–{last} trên hơn {total}", "{first}–{last} of more than {total}"),
    "next_page": ("Trang sau →", "Next page →"),
    "first_page": ("← Trang đầu", "← First page"),
    "no_messages": ("Không có thông điệp nào khớp bộ lọc.", "No message matches the filters."),
    "bad_filter": ("Bộ lọc «{field}» không hợp lệ: {why}", "The “{field}” filter is not valid: {why}"),
    "bad_time": ("cần một thời điểm, ví dụ 2025-11-23 09:15", "a time is needed, e.g. 2025-11-23 09:15"),
    "bad_state": ("không phải một trạng thái thông điệp", "not a message state"),
    "bad_range": ("thời điểm kết thúc phải sau thời điểm bắt đầu", "the end must be after the start"),
    "bad_cursor": ("trang không còn hợp lệ; hãy bắt đầu lại từ trang đầu", "not a page of this list; start again"),
    "view_trace": ("Xem lịch sử", "Trace"),
    "payload_masked": ("Nội dung (đã che dữ liệu cá nhân)", "Payload (personal data masked)"),
    "download_masked": ("Tải nội dung đã che", "Download masked payload"),
    "download_raw": ("Tải bản gốc (quản trị viên)", "Download original (admin)"),
    "payload_audited": (
        "Việc xem và tải nội dung thông điệp được ghi vào nhật ký kiểm toán với tên của bạn.",
        "Viewing and downloading a payload is recorded in the audit log under your name.",
    ),
    "raw_forbidden": (
        "Chỉ quản trị viên được tải bản gốc; người vận hành tải bản đã che dữ liệu cá nhân.",
        "Only an administrator may download the original; operators download it masked.",
    ),
    "unknown_message": ("Không có thông điệp «{id}».", "No message “{id}” is known."),
    # deadlines
    "deadlines": ("Thời hạn", "Deadlines"),
    "overdue_title": ("Hồ sơ vẫn ở trạng thái 1 quá 8 giờ làm việc", "Dossiers still at status 1 past 8 working hours"),
    "overdue_none": ("Không có hồ sơ nào quá hạn tiếp nhận.", "No dossier is past its intake deadline."),
    "overdue_unavailable": (
        "Không tính được thời hạn: cấu hình lịch làm việc (LIENTHONG_WORKING_*, LIENTHONG_HOLIDAYS…, "
        "LIENTHONG_CALENDAR_FILE) không hợp lệ: {error}",
        "Deadlines cannot be computed: the working calendar settings (LIENTHONG_WORKING_*, LIENTHONG_HOLIDAYS…, "
        "LIENTHONG_CALENDAR_FILE) are invalid: {error}",
    ),
    "processing_title": ("Hồ sơ quá hạn xử lý (chưa ở trạng thái 9/10)", "Dossiers past their due date (not at 9/10)"),
    "processing_none": ("Không có hồ sơ nào quá hạn xử lý.", "No dossier is past its due date."),
    "processing_note": (
        "Theo ngày hẹn trả hiện tại (được dời khi tiếp nhận hồ sơ bổ sung).",
        "Against the current due date (moved when a supplement is received).",
    ),
    "summary_processing": ("Hồ sơ quá hạn xử lý", "Dossiers past due date"),
    "submitted": ("Nộp lúc", "Submitted"),
    "due": ("Hạn", "Due"),
    "overdue_by": ("Quá hạn", "Overdue by"),
    "sync_lag": ("Độ trễ đồng bộ Cổng DVC quốc gia", "National portal sync lag"),
    "sync_waiting": (
        "{n} hồ sơ chưa đồng bộ, cũ nhất từ {at} ({age}).",
        "{n} dossier sync(s) not delivered, the oldest since {at} ({age}).",
    ),
    "sync_ok": ("Mọi hồ sơ đã được đồng bộ lên Cổng.", "Every dossier sync has reached the portal."),
    "sync_no_portal": ("Chưa đăng ký kết nối Cổng DVC quốc gia.", "No national portal connector is registered."),
    "catalogue": ("Danh mục thủ tục hành chính (Cổng DVC quốc gia)", "Procedure catalogue (national portal)"),
    "catalogue_counts": (
        "{p} thủ tục, {u} cơ quan, {f} lĩnh vực; đồng bộ lần cuối {at} ({age} trước).",
        "{p} procedures, {u} units, {f} fields; last synced {at} ({age} ago).",
    ),
    "catalogue_never": (
        "Chưa đồng bộ lần nào (hub catalogue sync): hồ sơ nêu thủ tục lạ chưa được cảnh báo.",
        "Never synced (hub catalogue sync): dossiers naming an unknown procedure are not warned about yet.",
    ),
    "catalogue_old": (
        "Danh mục cũ hơn {days} ngày: hãy đồng bộ lại (hub catalogue sync).",
        "The catalogue is older than {days} days: sync it again (hub catalogue sync).",
    ),
    "catalogue_error": ("Lần đồng bộ gần nhất lỗi: {error}", "The latest sync failed: {error}"),
    "catalogue_running": ("Đang đồng bộ từ {at}.", "A sync is running since {at}."),
    "payments": ("Xác nhận thanh toán, biên lai bị từ chối", "Rejected payment confirmations and receipts"),
    "payments_none": ("Không có xác nhận thanh toán nào bị từ chối.", "No payment confirmation was rejected."),
    "dead_more": (
        "Hiện {n} thư lỗi cũ nhất trên tổng số {total}; xem hết: nhật ký thông điệp (trạng thái thư lỗi), "
        "hub dead-letters list hoặc GET /api/v1/dead-letters (theo trang).",
        "The oldest {n} of {total} dead letters; all of them: the message log (state dead), hub dead-letters list "
        "or GET /api/v1/dead-letters (paged).",
    ),
    "payments_more": (
        "Hiện {n} lần từ chối gần nhất trên tổng số {total} (GET /api/v1/partner-refusals).",
        "The latest {n} of {total} refusals (GET /api/v1/partner-refusals).",
    ),
    "refusal_from": ("Từ {connector}, mã tham chiếu {reference}", "From {connector}, reference {reference}"),
    # why the hub refused a payment (or refund) confirmation: the rules of hub.flows.payments
    "rule_unknown-reference": ("Mã tham chiếu không do trục khởi tạo", "A reference the hub did not initiate"),
    "rule_payment-failed": ("Nền tảng báo thanh toán không thành công", "The platform reports a failed payment"),
    "rule_malformed": ("Bản tin không hợp lệ", "A malformed message"),
    "rule_amount-mismatch": ("Số tiền khác số tiền yêu cầu", "The amount differs from the one requested"),
    "rule_receipt-unsigned": ("Biên lai không có chữ ký số", "The receipt is not signed"),
    "rule_receipt-malformed": ("Biên lai không đọc được", "The receipt cannot be read"),
    "rule_receipt-signer": (
        "Biên lai ký bởi chứng thư chưa đăng ký",
        "The receipt is signed by an unregistered certificate",
    ),
    "rule_receipt-signature": ("Chữ ký biên lai không hợp lệ", "The receipt's signature does not verify"),
    "rule_receipt-mismatch": ("Biên lai không khớp xác nhận", "The receipt does not match the confirmation"),
    "rule_unknown-original-reference": ("Không rõ khoản thanh toán gốc", "An unknown original payment"),
    "rule_original-mismatch": ("Khoản gốc không khớp yêu cầu hoàn", "The original payment differs from the refund's"),
    "rule_refund-exceeds-paid": ("Hoàn vượt số đã thanh toán", "The refunds exceed what was paid"),
    "rule_already-confirmed": ("Đã xác nhận bằng giao dịch khác", "Already confirmed by another transaction"),
    "rule_receipt-missing": (
        "Chưa lấy được biên lai điện tử (GET_BILL); đối soát sẽ thử lại",
        "The e-receipt could not be fetched (GET_BILL); reconciliation tries again",
    ),
    # the receipt rule (hub.flows.receipts; Quảng Nam Điều 14.3): the payment is held, the dossier stays at 6
    "rule_receipt-unavailable": (
        "Chưa lấy được biên lai điện tử; đối soát sẽ thử lại",
        "The e-receipt could not be fetched; reconciliation tries again",
    ),
    "rule_receipt-signer-not-registered": (
        "Biên lai không do trung gian thanh toán đã đăng ký ký số: hồ sơ giữ ở trạng thái 6",
        "The receipt is not signed by the registered intermediary: the dossier stays at 6",
    ),
    "rule_receipt-signature-invalid": (
        "Chữ ký số của biên lai không hợp lệ hoặc biên lai đã bị sửa: hồ sơ giữ ở trạng thái 6",
        "The receipt's signature is broken or the receipt was changed: the dossier stays at 6",
    ),
    "rule_receipt-not-a-pdf": (
        "Biên lai không phải tệp PDF có chữ ký số: hồ sơ giữ ở trạng thái 6",
        "The receipt is not a signed PDF: the dossier stays at 6",
    ),
    "rule_receipt-too-large": (
        "Biên lai quá lớn: hồ sơ giữ ở trạng thái 6",
        "The receipt is too large: the dossier stays at 6",
    ),
    "rule_refund-dossier-resolved": ("Hồ sơ đã giải quyết: không hoàn phí", "The dossier is resolved: no refund"),
    # trust view
    "trust_link": ("Chứng thư số", "Certificates"),
    "trust_title": ("Chứng thư số và điểm tin cậy", "Certificates and trust anchors"),
    "trust_note": (
        "Cảnh báo khi còn dưới {warn} ngày, nghiêm trọng khi còn dưới {critical} ngày (như các cảnh báo Prometheus).",
        "Warning with fewer than {warn} days left, critical with fewer than {critical} (as the Prometheus alerts).",
    ),
    "back_to_console": ("Về bảng điều hành", "Back to the console"),
    "trust_hub": ("Chứng thư của trục (ký mọi thông điệp gửi đi)", "The hub's own certificate (signs every message)"),
    "trust_hub_unreadable": (
        "Không đọc được chứng thư của trục: {error}",
        "The hub's certificate cannot be read: {error}",
    ),
    "trust_connectors": ("Chứng thư đã đăng ký của đối tác", "Partners' registered certificates"),
    "trust_no_connector_certs": ("Chưa đối tác nào đăng ký chứng thư.", "No partner has a registered certificate."),
    "trust_unpinned": (
        "Không đăng ký chứng thư (xác thực qua CA tin cậy):",
        "Without a registered certificate (trusted through a CA anchor):",
    ),
    "trust_anchors": ("CA tin cậy (LIENTHONG_TRUST_DIR)", "Trust anchors (LIENTHONG_TRUST_DIR)"),
    "trust_ca": ("CA", "CA"),
    "trust_no_anchors": ("Không có CA tin cậy nào.", "No trust anchor is configured."),
    "cert_owner": ("Của", "Whose"),
    "cert_subject": ("Chủ thể", "Subject"),
    "cert_serial": ("Số hiệu", "Serial"),
    "cert_fingerprint": ("Dấu vân tay", "Fingerprint"),
    "cert_not_after": ("Hết hạn lúc", "Expires at"),
    "cert_days_left": ("Còn lại", "Days left"),
    "cert_level_ok": ("Còn hạn", "Valid"),
    "cert_level_warning": ("Sắp hết hạn", "Expiring"),
    "cert_level_critical": ("Sắp hết hạn (< 7 ngày)", "Expiring (< 7 days)"),
    "cert_level_expired": ("Đã hết hạn", "Expired"),
    # delivery history (hub.console.history)
    "history": ("Lịch sử chuyển phát", "Delivery history"),
    "history_window": ("Khoảng thời gian", "Window"),
    "window_1h": ("1 giờ qua", "Last hour"),
    "window_24h": ("24 giờ qua", "Last 24 hours"),
    "window_7d": ("7 ngày qua", "Last 7 days"),
    "bucket_60": ("mỗi cột 1 phút", "one bar per minute"),
    "bucket_900": ("mỗi cột 15 phút", "one bar per 15 minutes"),
    "bucket_3600": ("mỗi cột 1 giờ", "one bar per hour"),
    "failed_retry": ("Lỗi, chờ gửi lại", "Failed, retry planned"),
    "history_chart_title": ("{name}: chuyển phát, {window}", "{name}: deliveries, {window}"),
    "no_traffic_window": ("Không có lưu lượng trong khoảng thời gian này.", "No traffic in this window."),
    "history_none": ("Chưa có đối tác nhận nào.", "No destination yet."),
    "all_destinations": ("Mọi đối tác nhận", "All destinations"),
    "chart_desc": (
        "Đã gửi {delivered}, lỗi chờ gửi lại {failed}, thư chết {dead}, từ {start} đến {end} (giờ Việt Nam); "
        "cột cao nhất {peak} lúc {peak_at}.",
        "Delivered {delivered}, failed with a retry planned {failed}, dead {dead}, from {start} to {end} "
        "(Vietnam time); the highest bar is {peak} at {peak_at}.",
    ),
    "history_note": (
        "Số đếm theo từng phút, lưu 7 ngày. Lỗi chờ gửi lại: lần gửi thất bại tạm thời; thư chết: đã bỏ cuộc.",
        "Counted per minute, kept 7 days. Failed: an attempt that failed and will be retried; dead: given up on.",
    ),
    "age_s": ("{n} giây", "{n} s"),
    "age_m": ("{n} phút", "{n} min"),
    "age_h": ("{n} giờ", "{n} h"),
    "age_d": ("{n} ngày", "{n} d"),
}

MESSAGE_STATES = {
    "received": ("đã nhận", "received"),
    "validated": ("hợp lệ", "validated"),
    "warning": ("cảnh báo", "warning"),
    "queued": ("vào hàng đợi", "queued"),
    "attempt_started": ("bắt đầu gửi", "attempt started"),
    "delivered": ("đã gửi", "delivered"),
    "failed": ("lỗi", "failed"),
    "retry_scheduled": ("hẹn gửi lại", "retry scheduled"),
    "dead_lettered": ("chuyển thư lỗi", "dead-lettered"),
    "replayed": ("gửi lại", "replayed"),
    "rejected": ("bị từ chối", "rejected"),
    "viewed": ("được xem", "viewed"),
    "dead": ("lỗi", "dead"),
    "retrying": ("chờ gửi lại", "retrying"),
    "delivering": ("đang gửi", "delivering"),
    "accepted": ("đã nhận", "accepted"),
    "applied": ("áp dụng", "applied"),
    "stale": ("cũ, bỏ qua", "stale"),
    "corrected": ("đính chính", "corrected"),
    "exhausted": ("hết lượt gửi lại", "retries exhausted"),
    "mapping": ("lỗi chuyển đổi/ký", "mapping or signing failed"),
    "permanent": ("lỗi vĩnh viễn", "permanent failure"),
    "status_applied": ("cập nhật trạng thái hồ sơ", "dossier status applied"),
    "status_stale": ("trạng thái cũ, bỏ qua", "stale status ignored"),
    "status_rejected": ("trạng thái không hợp lệ", "status transition refused"),
    "status_corrected": ("đính chính trạng thái", "status corrected"),
    "synced": ("đã đồng bộ", "synced"),
    "status_synced": ("đồng bộ trạng thái hồ sơ", "dossier status synced"),
    "notified": ("đã thông báo người nộp", "applicant notified"),
    "notify_skipped": ("không gửi thông báo", "notification not sent"),
    "retry": ("gửi lại", "retry"),
    # a finished update held because of its result documents (hub.exchange.results): the dead letter's reason
    "result-unsigned": ("kết quả chưa ký số", "result not signed"),
    "result-signature-invalid": ("chữ ký số kết quả không hợp lệ", "result signature invalid"),
    "result-signer-not-registered": ("kết quả không do cơ quan đã đăng ký ký", "result not signed by the agency"),
    "result-not-a-pdf": ("kết quả không phải PDF/XML", "result not a PDF or XML"),
    "result-malformed": ("kết quả XML sai cấu trúc", "result XML malformed"),
    "result-too-large": ("tệp kết quả quá lớn", "result too large"),
    "result-unavailable": ("không tải được kết quả", "result unavailable"),
    "result-digest-mismatch": ("kết quả khác mã băm đã khai", "result differs from its digest"),
    "result-host-not-allowed": ("liên kết kết quả tới máy chủ không được phép", "result link to a host not allowed"),
}

# Dossier status names (hub.dossier.status_machine.DossierStatus) as the store's details write them ("4 PROCESSING").
STATUS_NAMES = {
    "NEW": "Mới", "RECEIVED": "Đã tiếp nhận", "NOT_RECEIVED": "Không tiếp nhận", "PROCESSING": "Đang xử lý",
    "SUPPLEMENT_REQUESTED": "Yêu cầu bổ sung", "FINANCIAL_OBLIGATION_REQUESTED": "Yêu cầu thực hiện nghĩa vụ tài chính",
    "WITHDRAWN": "Rút hồ sơ", "PROCESSING_STOPPED": "Dừng xử lý", "DONE": "Đã xử lý xong",
    "RESULT_RETURNED": "Đã trả kết quả",
}  # fmt: skip

# The details the hub writes (hub.dossier.status_machine, hub.store), whole-text patterns → Vietnamese. ``{rest}``
# and ``{error}`` are translated again (a status event's detail wraps the status machine's reason).
DETAILS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.DOTALL), vi)
    for pattern, vi in (
        (r"first update seen: (?P<a>.+)", "cập nhật đầu tiên: {a}"),
        (r"procedure (?P<code>\S+) is not in the national portal's procedure catalogue \(hub catalogue sync\) "
         r"\[procedure-unknown\]",
         "thủ tục {code} không có trong danh mục thủ tục của Cổng DVC quốc gia (hub catalogue sync) "
         "[procedure-unknown]"),
        (r"stale: update to (?P<a>.+?) at (?P<t>\S+) is older than the last applied update at (?P<u>\S+); "
         r"recorded, not applied",
         "cũ: cập nhật sang {a} lúc {t} cũ hơn cập nhật đã áp dụng gần nhất lúc {u}; đã ghi nhận, không áp dụng"),
        (r"status-transition: (?P<a>.+?) -> (?P<b>.+?): not a legal transition",
         "status-transition: {a} -> {b}: không phải chuyển trạng thái hợp lệ"),
        (r"status-transition: (?P<a>.+?) -> (?P<b>.+?): (?P<c>.+?) is terminal; only an audited correction may "
         r"change it",
         "status-transition: {a} -> {b}: {c} là trạng thái cuối; chỉ đính chính có ghi nhật ký mới thay đổi được"),
        (r"correction by (?P<w>.+?): (?P<a>.+?) -> (?P<b>.+?): (?P<r>.*)", "đính chính bởi {w}: {a} -> {b}: {r}"),
        (r"(?P<a>.+?) restated by the dossier's record \(amended\)", "{a} do hồ sơ gốc báo lại (hồ sơ được cập nhật)"),
        (r"reported by the provincial system's dossier\.sync \(recorded, not run through the status machine\)",
         "do hệ thống một cửa của tỉnh báo qua dossier.sync (ghi nhận, không qua kiểm tra chuyển trạng thái)"),
        (r"(?P<code>\S+) -> (?P<n>\d+): synced", "{code} -> {n}: đã đồng bộ"),
        (r"(?P<code>\S+) -> (?P<n>\d+): (?P<rest>.+)", "{code} -> {n}: {rest}"),
        (r"retry in (?P<s>[\d.]+) s at (?P<t>\S+)", "gửi lại sau {s} giây, lúc {t}"),
        # citizen notifications (adapters.notification, mappings.notification)
        (r"(?P<a>[a-z_]+) sent by (?P<c>email|sms) to (?P<to>\S+)", "đã gửi thông báo {a} qua {c} tới {to}"),
        (r"(?P<a>[a-z_]+) by (?P<c>email|sms) not sent: (?P<rest>.+)", "không gửi thông báo {a} qua {c}: {rest}"),
        (r"intake", "tiếp nhận hồ sơ"),
        (r"received", "hồ sơ đầy đủ, hợp lệ"),
        (r"not_received", "không tiếp nhận hồ sơ"),
        (r"supplement", "yêu cầu bổ sung"),
        (r"stopped", "không giải quyết hồ sơ"),
        (r"result", "trả kết quả"),
        (r"the applicant declined notifications \(applicant notify=false\)",
         "người nộp đã từ chối nhận thông báo (applicant notify=false)"),
        (r"the applicant accepts notifications by (?P<a>.+) only, not (?P<b>\S+)",
         "người nộp chỉ nhận thông báo qua {a}, không qua {b}"),
        (r"the applicant gave no email address", "người nộp không khai địa chỉ thư điện tử"),
        (r"the applicant gave no phone number", "người nộp không khai số điện thoại"),
        (r"no dossier\.sync of this dossier is known: no applicant to notify",
         "chưa có dossier.sync của hồ sơ: không biết người nộp để thông báo"),
        (r"gave up after (?P<n>\d+) attempts: (?P<error>.*)", "ngừng gửi sau {n} lần: {error}"),
        (r"(?P<reason>rejected|exhausted|mapping|permanent|result-[a-z-]+): (?P<error>.*)", "{reason}: {error}"),
        (r"dead letter (?P<n>\d+): (?P<rest>.*)", "thư lỗi {n}: {rest}"),
        (r"dead letter (?P<n>\d+)", "thư lỗi {n}"),
        (r"retry now: the backoff skipped", "gửi lại ngay: bỏ qua thời gian chờ"),
        (r"operator console", "trang điều hành"),
        (r"\(none\)", "(chưa có)"),
    )
)  # fmt: skip
_STATUS_LABEL = re.compile(r"\b(\d{1,2}) ([A-Z][A-Z_]{2,})\b")
_LABELS.update(ACTION_LABELS)
MESSAGE_STATES.update(ACTION_STATES)


def pick_lang(query: str | None, cookie: str | None) -> str:
    for value in (query, cookie):
        if value in LANGS:
            return value
    return DEFAULT_LANG


class Translator:
    """``t("key", n=3)`` in templates; unknown keys are shown as themselves (visible, never an error)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self._index = LANGS.index(self.lang)

    def __call__(self, key: str, **values: object) -> str:
        pair = _LABELS.get(key)
        text = key if pair is None else pair[self._index]
        return text.format(**values) if values else text

    def state(self, state: str) -> str:
        pair = MESSAGE_STATES.get(state)
        return state if pair is None else pair[self._index]

    def detail(self, text: str | None) -> str:
        """A detail the hub wrote, in the page's language (unknown text, e.g. a partner's error, as it is)."""
        if not text or self.lang == "en":
            return text or ""
        return _translate_detail(text)

    def number(self, n: int) -> str:
        """``1234`` as ``1.234`` (vi) or ``1,234`` (en)."""
        grouped = f"{n:,}"
        return grouped.replace(",", ".") if self.lang == "vi" else grouped

    def age(self, seconds: float | None) -> str:
        if seconds is None:
            return "–"
        if seconds < 120:
            return self("age_s", n=int(seconds))
        if seconds < 7200:
            return self("age_m", n=int(seconds // 60))
        if seconds < 172800:
            return self("age_h", n=round(seconds / 3600, 1))
        return self("age_d", n=int(seconds // 86400))


def _translate_detail(text: str, depth: int = 0) -> str:
    for pattern, vi in DETAILS:
        match = pattern.fullmatch(text.strip())
        if match is None:
            continue
        parts = {k: (v or "") for k, v in match.groupdict().items()}
        if depth < 2:
            for key in ("rest", "error", "a", "b", "c"):
                if key in parts:
                    parts[key] = _translate_detail(parts[key], depth + 1)
        if "reason" in parts:
            pair = MESSAGE_STATES.get(parts["reason"])
            parts["reason"] = parts["reason"] if pair is None else pair[0]
        return vi.format(**parts)
    return _STATUS_LABEL.sub(lambda m: f"{m[1]} {STATUS_NAMES.get(m[2], m[2])}", text)


def labels(lang: str) -> dict[str, str]:
    """Every label in one language (tests check both languages define the same keys)."""
    index = LANGS.index(lang)
    return {key: pair[index] for key, pair in _LABELS.items()}
