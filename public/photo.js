// Kontor's meter photo: shrinks the picture taken or chosen for a declaration to a JPEG within
// the budget (about 60 KB), the dial still legible: the longer side at most 1280 pixels, then
// lower quality, then smaller, until it fits. Re-encoding on a canvas also leaves behind what the
// camera wrote into the file (the place it was taken, the phone's make). Loaded only when a photo
// is taken (index.html's `kontorShrink`), not with the first page.
export async function shrink(file, budget) {
  const bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  let side = 1280;
  let quality = 0.8;
  let blob = null;
  try {
    for (let attempt = 0; attempt < 16; attempt++) {
      const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
      const canvas = document.createElement('canvas');
      canvas.width = Math.max(1, Math.round(bitmap.width * scale));
      canvas.height = Math.max(1, Math.round(bitmap.height * scale));
      canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', quality));
      if (blob && blob.size <= budget) return blob;
      if (quality > 0.45) quality -= 0.1;
      else side = Math.round(side * 0.8);
    }
  } finally {
    bitmap.close();
  }
  throw new Error('the picture could not be made small enough');
}
