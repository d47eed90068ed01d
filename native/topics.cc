#include "topics.h"

#include "buffers.h"
#include "connection.h"
#include "ws_frame.h"

namespace nlws {

PublishJob::~PublishJob() {
  for (Variant& v : variants_)
    if (v.frame) v.frame->Unref();
}

SharedFrame* PublishJob::Compressed(int window_bits, int level) {
  for (Variant& v : variants_)
    if (v.bits == window_bits && v.level == level) return v.frame;
  std::vector<uint8_t> z;
  SharedFrame* f = nullptr;
  if (deflaters_->Compress(window_bits, level, plain_->payload(), plain_->payload_len(), &z)) {
    size_t flen;
    uint8_t* block = NewFrame(false, plain_->opcode, z.data(), z.size(), &flen, true);
    if (block) {
      f = new SharedFrame();
      f->block = block;
      f->len = flen;
      f->header_len = FrameHeaderSize(z.size(), false);
      f->opcode = plain_->opcode;
      if (plain_->held) f->Count(plain_->held);
    }
  }
  variants_.push_back(Variant{window_bits, level, f});
  return f;
}

int64_t Topics::Memberships::Find(const Topic* t) const {
  if (index_) {
    auto it = index_->find(t);
    return it == index_->end() ? -1 : static_cast<int64_t>(it->second);
  }
  for (size_t k = 0; k < list_.size(); k++)
    if (list_[k].topic == t) return static_cast<int64_t>(k);
  return -1;
}

void Topics::Memberships::Add(Membership m) {
  list_.push_back(m);
  if (index_) {
    index_->emplace(m.topic, static_cast<uint32_t>(list_.size() - 1));
  } else if (list_.size() > kIndexFrom) {
    index_.reset(new Index());
    index_->reserve(list_.size() * 2);
    for (size_t k = 0; k < list_.size(); k++)
      index_->emplace(list_[k].topic, static_cast<uint32_t>(k));
  }
}

void Topics::Memberships::RemoveAt(uint32_t k) {
  if (index_) index_->erase(list_[k].topic);
  list_[k] = list_.back();
  list_.pop_back();
  if (index_ && k < list_.size()) (*index_)[list_[k].topic] = k;
  if (index_ && list_.size() <= kIndexFrom / 2) index_.reset();  // a short list again
}

bool Topics::Subscribe(Conn* c, Memberships* mine, const std::string& name,
                       int64_t max_backpressure) {
  std::unique_ptr<Topic>& slot = map_[name];
  int64_t k = -1;
  if (!slot) {
    slot.reset(new Topic());
    slot->name = name;
  } else {
    k = mine->Find(slot.get());
  }
  Topic* t = slot.get();
  if (k >= 0) {
    t->subs[(*mine)[static_cast<uint32_t>(k)].index].max_backpressure = max_backpressure;
    return false;
  }
  t->subs.push_back(Topic::Sub{c, static_cast<uint32_t>(mine->size()), max_backpressure});
  mine->Add(Membership{t, static_cast<uint32_t>(t->subs.size() - 1)});
  return true;
}

bool Topics::Unsubscribe(Conn* c, Memberships* mine, const std::string& name) {
  (void)c;
  auto it = map_.find(name);
  if (it == map_.end()) return false;
  int64_t k = mine->Find(it->second.get());
  if (k < 0) return false;
  Remove(mine, static_cast<uint32_t>(k));
  return true;
}

void Topics::LeaveAll(Memberships* mine) {
  while (!mine->empty()) Remove(mine, static_cast<uint32_t>(mine->size() - 1));
}

void Topics::Remove(Memberships* mine, uint32_t k) {
  Membership m = (*mine)[k];
  Topic* t = m.topic;
  // Swap-remove from the topic's list; the moved subscription learns its new place.
  Topic::Sub moved = t->subs.back();
  t->subs[m.index] = moved;
  t->subs.pop_back();
  if (m.index < t->subs.size()) moved.conn->memberships()[moved.index].index = m.index;
  // And from the connection's list.
  mine->RemoveAt(k);
  if (k < mine->size()) {
    const Membership& last = (*mine)[k];
    last.topic->subs[last.index].index = k;
  }
  if (t->subs.empty()) {
    std::string n = t->name;
    map_.erase(n);  // frees t
  }
}

const Topics::Topic* Topics::Find(const std::string& name) const {
  auto it = map_.find(name);
  return it == map_.end() ? nullptr : it->second.get();
}

}  // namespace nlws
